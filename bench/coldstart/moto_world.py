"""The AWS world of the cold-start benchmark's `--backend aws` mode, created in a moto server.

Usage: python3 - <moto url> <configuration document file>   (the harness feeds this on stdin)

Creates what the SAM template would: the state, approvals and audit tables (TTL on `ttl`),
the intake and scan queues, a state machine, the token-sealing key, the webhook and approval
secrets, and the configuration secret (the JSON document of inventory and policy the
functions read at init). Prints the functions' environment as one JSON object.
"""
import json
import sys

import boto3

url, config_file = sys.argv[1], sys.argv[2]
session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
)


def client(name):
    return session.client(name, endpoint_url=url)


ddb = client("dynamodb")
for table in ("certops-state", "certops-approvals"):
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    ddb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
ddb.create_table(
    TableName="certops-audit",
    BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[
        {"AttributeName": "execution", "AttributeType": "S"},
        {"AttributeName": "seq", "AttributeType": "N"},
    ],
    KeySchema=[
        {"AttributeName": "execution", "KeyType": "HASH"},
        {"AttributeName": "seq", "KeyType": "RANGE"},
    ],
)
sqs = client("sqs")
intake = sqs.create_queue(QueueName="certops-intake")["QueueUrl"]
scan = sqs.create_queue(QueueName="certops-scan")["QueueUrl"]
sfn = client("stepfunctions")
machine = sfn.create_state_machine(
    name="certops-cert-renewal",
    definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
    roleArn="arn:aws:iam::123456789012:role/certops-coldstart",
)["stateMachineArn"]
secrets = client("secretsmanager")


def secret(name, value):
    return secrets.create_secret(Name=name, SecretString=value)["ARN"]


with open(config_file, encoding="utf-8") as f:
    document = f.read()
print(
    json.dumps(
        {
            "CERTOPS_BACKEND": "aws",
            "CERTOPS_STATE_TABLE": "certops-state",
            "CERTOPS_APPROVALS_TABLE": "certops-approvals",
            "CERTOPS_AUDIT_TABLE": "certops-audit",
            "CERTOPS_INTAKE_QUEUE_URL": intake,
            "CERTOPS_SCAN_QUEUE_URL": scan,
            "CERTOPS_STATE_MACHINE_ARN": machine,
            "CERTOPS_KEYSTORE_PREFIX": "certops/keystore/",
            "CERTOPS_CONFIG_ARN": secret("certops/configuration", document),
            "CERTOPS_SEALING_KEY_ARN": secret(
                "certops/sealing-key", "a-sealing-seed-of-more-than-thirty-two-characters"
            ),
            "CERTOPS_WEBHOOK_SECRET_ARN": secret("certops/webhook", "coldstart-webhook-secret"),
            "CERTOPS_AUDIT_KEY_ARN": secret(
                "certops/audit-key", "an-audit-key-of-more-than-thirty-two-characters"
            ),
        }
    )
)
