"""boto3 against `certops serve`: the same calls a Python operator script makes
on AWS, with only endpoint_url changed. Run by tests/sfn_api_boto3.rs, which
starts the server and passes its URL as the first argument."""

import json
import os
import sys
import time

import boto3
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/certops-local"


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected a ClientError")


def main(url):
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=os.environ["CERTOPS_API_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["CERTOPS_API_SECRET_ACCESS_KEY"],
    )
    definition = json.dumps({
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "noop", "Payload": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": 60,
                "TimeoutSeconds": 600,
                "Next": "Tag",
            },
            "Tag": {"Type": "Pass", "Parameters": {"who.$": "$.approvedBy", "n.$": "States.MathAdd(1, 2)"}, "End": True},
        },
    })
    arn = sfn.create_state_machine(name="py-renewal", definition=definition, roleArn=ROLE)["stateMachineArn"]
    assert arn.endswith(":stateMachine:py-renewal"), arn
    assert sfn.describe_state_machine(stateMachineArn=arn)["type"] == "STANDARD"

    started = sfn.start_execution(stateMachineArn=arn, name="INC0001", input=json.dumps({"cert": "api.example.com"}))
    again = sfn.start_execution(stateMachineArn=arn, name="INC0001", input=json.dumps({"cert": "api.example.com"}))
    assert started["executionArn"] == again["executionArn"]
    assert error_code(lambda: sfn.start_execution(stateMachineArn=arn, name="INC0001", input="{}")) == "ExecutionAlreadyExists"

    token = None
    for _ in range(200):
        for e in sfn.get_execution_history(executionArn=started["executionArn"])["events"]:
            if e["type"] == "TaskScheduled":
                token = json.loads(e["taskScheduledEventDetails"]["parameters"])["Payload"]["token"]
        if token:
            break
        time.sleep(0.02)
    assert token, "no task token in TaskScheduled"
    sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output=json.dumps({"approvedBy": "ecab-bob"}))

    for _ in range(200):
        d = sfn.describe_execution(executionArn=started["executionArn"])
        if d["status"] != "RUNNING":
            break
        time.sleep(0.02)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"who": "ecab-bob", "n": 3}, d["output"]
    assert d["startDate"] <= d["stopDate"]

    paginator = sfn.get_paginator("get_execution_history")
    events = [e for page in paginator.paginate(executionArn=started["executionArn"], PaginationConfig={"PageSize": 2}) for e in page["events"]]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1)), events
    assert events[-1]["type"] == "ExecutionSucceeded"

    listed = sfn.list_executions(stateMachineArn=arn, statusFilter="SUCCEEDED")["executions"]
    assert [e["name"] for e in listed] == ["INC0001"], listed

    assert error_code(lambda: sfn.describe_execution(executionArn=arn.replace("stateMachine", "execution") + ":missing")) == "ExecutionDoesNotExist"
    assert error_code(lambda: sfn.send_task_failure(taskToken="bogus", error="X")) == "InvalidToken"
    assert error_code(lambda: sfn.create_state_machine(name="bad", definition="{}", roleArn=ROLE)) == "InvalidDefinition"
    result = sfn.validate_state_machine_definition(definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": True}}}))
    assert result["result"] == "FAIL" and "'A'" in result["diagnostics"][0]["message"] and "Seconds" in result["diagnostics"][0]["message"], result
    sfn.delete_state_machine(stateMachineArn=arn)
    assert error_code(lambda: sfn.describe_state_machine(stateMachineArn=arn)) == "StateMachineDoesNotExist"
    print("boto3: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
