"""Check 6: the transformed stack created in moto's CloudFormation, then inspected through the
services' own APIs (boto3 against the same moto server).

moto's CloudFormation does not model every resource type the template produces. Those are
removed from a copy of the template before create_stack and references to them rewritten
(see MOTO_FILTERED); the ones moto offers through a service API are then created through that
API from the template's own properties, so their settings are still exercised. With moto 5.2
the filtered types are:

  AWS::ApiGatewayV2::Api, AWS::ApiGatewayV2::Stage      (no CloudFormation model)
  AWS::Lambda::Alias                                    (no CloudFormation model)
  AWS::StepFunctions::StateMachineVersion / ...Alias    (no CloudFormation model)
  AWS::Scheduler::Schedule                              -> scheduler.create_schedule
  AWS::CloudWatch::Alarm                                -> cloudwatch.put_metric_alarm
  AWS::SecretsManager::Secret                           -> secretsmanager.create_secret
  AWS::SNS::Subscription                                (conditional; absent with defaults)

The filtered set is computed from moto itself, so a moto that models more filters less.
"""

import copy
import io
import json
import re
import time
import zipfile

import boto3

from template import ACCOUNT, ARTIFACT_BUCKET, CheckFailed, REGION, STACK, load, read_definition, state_machines, transformed

#: Types created through their service API after the stack, from the template's properties.
VIA_API = ("AWS::Scheduler::Schedule", "AWS::CloudWatch::Alarm", "AWS::SecretsManager::Secret")


def moto_cfn_types():
    """Resource types moto's CloudFormation can create."""
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def _clients(endpoint):
    kw = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return lambda name: boto3.client(name, **kw)


def _placeholder(rid):
    return f"arn:aws:moto-filtered:{REGION}:{ACCOUNT}:{rid}"


def _rewrite(value, filtered, resources):
    """`value` with every reference to a filtered resource replaced by something moto can
    resolve: a function alias by its function's ARN, a state machine version or alias by the
    state machine, anything else by a placeholder ARN naming it."""
    if isinstance(value, list):
        return [_rewrite(v, filtered, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref" and arg in filtered:
            res = resources[arg]
            if res["Type"] == "AWS::Lambda::Alias":
                return {"Fn::GetAtt": [res["Properties"]["FunctionName"]["Ref"], "Arn"]}
            if res["Type"] == "AWS::StepFunctions::StateMachineAlias":
                version = res["Properties"]["DeploymentPreference"]["StateMachineVersionArn"]["Ref"]
                return {"Ref": resources[version]["Properties"]["StateMachineArn"]["Ref"]}
            return _placeholder(arg)
        if fn == "Fn::GetAtt":
            target = arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]
            if target in filtered:
                return _placeholder(target)
        if fn == "Fn::Sub":
            text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, None)

            def sub(m):
                name = m.group(1).split(".", 1)[0]
                return _placeholder(name) if name in filtered else m.group(0)

            text = re.sub(r"\$\{([^}!]+)\}", sub, text)
            if variables is not None:
                return {"Fn::Sub": [text, _rewrite(variables, filtered, resources)]}
            return {"Fn::Sub": text}
    return {k: _rewrite(v, filtered, resources) for k, v in value.items()}


def moto_copy(template_path):
    """(the template moto can create, the filtered resources by logical id)."""
    out = transformed(template_path)
    resources = out["Resources"]
    supported = moto_cfn_types()
    filtered = {rid: res for rid, res in resources.items() if res["Type"] not in supported}
    doc = copy.deepcopy(out)
    for rid in filtered:
        doc["Resources"].pop(rid)
    # moto reads DefinitionString only. CloudFormation applies DefinitionSubstitutions the way
    # Fn::Sub applies variables; moto's Fn::Sub with a variable map runs string.Template, which
    # would also turn the definition's `$$.Execution.Id` into `$.Execution.Id`. So the copy
    # writes each substitution as the resource attribute it stands for (`${Fn.Arn}:1`: moto
    # resolves a Lambda::Version's Ref to its logical id, and 1 is a function's first version).
    template = load(template_path)
    for name, sam in state_machines(template):
        _, text = read_definition(template_path, sam)
        props = doc["Resources"][name]["Properties"]
        props.pop("DefinitionS3Location", None)
        for key, value in props.pop("DefinitionSubstitutions", {}).items():
            text = text.replace("${" + key + "}", _moto_substitution(resources, key, value))
        props["DefinitionString"] = {"Fn::Sub": text}
    for rid, res in doc["Resources"].items():
        if "DependsOn" in res:
            deps = [d for d in (res["DependsOn"] if isinstance(res["DependsOn"], list) else [res["DependsOn"]]) if d not in filtered]
            if deps:
                res["DependsOn"] = deps
            else:
                res.pop("DependsOn")
        for key in ("Properties", "Condition"):
            if key in res:
                res[key] = _rewrite(res[key], filtered, resources)
    if "Outputs" in doc:
        doc["Outputs"] = _rewrite(doc["Outputs"], filtered, resources)
    return doc, filtered


def _moto_substitution(resources, key, value):
    target = value.get("Ref") if isinstance(value, dict) else None
    res = resources.get(target, {})
    if res.get("Type") == "AWS::Lambda::Version":
        return "${" + res["Properties"]["FunctionName"]["Ref"] + ".Arn}:1"
    if res.get("Type") == "AWS::Lambda::Function":
        return "${" + target + ".Arn}"
    raise CheckFailed([f"DefinitionSubstitutions.{key}: no moto form for {json.dumps(value)}"])


def _stub_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\n# placeholder: moto never runs it\n")
    return buf.getvalue()


class Resolver:
    """Resolves intrinsic functions of filtered resources against the created stack."""

    def __init__(self, template, physical, client):
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.resources = template["Resources"]
        self.physical = physical
        self.client = client

    def arn(self, rid):
        kind = self.resources[rid]["Type"]
        phys = self.physical[rid]
        if kind == "AWS::IAM::Role":
            return self.client("iam").get_role(RoleName=phys)["Role"]["Arn"]
        if kind == "AWS::Lambda::Function":
            return self.client("lambda").get_function(FunctionName=phys)["Configuration"]["FunctionArn"]
        if kind == "AWS::SNS::Topic":
            return phys
        if kind == "AWS::SQS::Queue":
            return self.client("sqs").get_queue_attributes(QueueUrl=phys, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        raise CheckFailed([f"cannot resolve the ARN of {rid} ({kind})"])

    def ref(self, name):
        if name in self.params:
            return self.params[name]
        if name == "AWS::AccountId":
            return ACCOUNT
        if name == "AWS::Region":
            return REGION
        if name == "AWS::StackName":
            return STACK
        if name == "AWS::Partition":
            return "aws"
        if name in self.physical:
            return self.physical[name]
        res = self.resources.get(name)
        if res and res["Type"] == "AWS::Lambda::Alias":
            fn = res["Properties"]["FunctionName"]["Ref"]
            return f"{self.arn(fn)}:{res['Properties']['Name']}"
        raise CheckFailed([f"cannot resolve Ref {name}"])

    def getatt(self, rid, attr):
        kind = self.resources[rid]["Type"]
        if attr == "Arn":
            return self.arn(rid)
        if kind == "AWS::SQS::Queue" and attr == "QueueName":
            return self.physical[rid].rsplit("/", 1)[-1]
        raise CheckFailed([f"cannot resolve GetAtt {rid}.{attr}"])

    def __call__(self, value):
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                rid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(rid, attr)
            if fn == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]

                def sub(m):
                    name = m.group(1)
                    if "." in name and not name.startswith("AWS::"):
                        return self.getatt(*name.split(".", 1))
                    return self.ref(name)

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
        return {k: self(v) for k, v in value.items()}


def _create_via_api(kind, rid, props, client):
    if kind == "AWS::Scheduler::Schedule":
        target = dict(props["Target"])
        client("scheduler").create_schedule(
            Name=props["Name"],
            ScheduleExpression=props["ScheduleExpression"],
            ScheduleExpressionTimezone=props.get("ScheduleExpressionTimezone", "UTC"),
            FlexibleTimeWindow=props["FlexibleTimeWindow"],
            Description=props.get("Description", ""),
            Target=target,
        )
        return props["Name"]
    if kind == "AWS::CloudWatch::Alarm":
        args = {k: v for k, v in props.items() if k != "AlarmName"}
        args["AlarmName"] = f"{STACK}-{rid}"
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in args:
                args[key] = int(args[key])
        args["Threshold"] = float(args["Threshold"])
        client("cloudwatch").put_metric_alarm(**args)
        return args["AlarmName"]
    if kind == "AWS::SecretsManager::Secret":
        gen = props.get("GenerateSecretString", {})
        value = client("secretsmanager").get_random_password(
            PasswordLength=int(gen.get("PasswordLength", 32)),
            ExcludePunctuation=bool(gen.get("ExcludePunctuation", False)),
        )["RandomPassword"]
        if "SecretStringTemplate" in gen:
            doc = json.loads(gen["SecretStringTemplate"])
            doc[gen["GenerateStringKey"]] = value
            value = json.dumps(doc)
        arn = client("secretsmanager").create_secret(
            Name=f"{STACK}/{rid}", Description=props.get("Description", ""), SecretString=value
        )["ARN"]
        return arn
    raise CheckFailed([f"{rid}: no API fallback for {kind}"])


def create(template_path, endpoint):
    """Creates the stack in moto at `endpoint` and checks what it made; returns a report."""
    client = _clients(endpoint)
    doc, filtered = moto_copy(template_path)
    s3 = client("s3")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    code = _stub_zip()
    for rid, res in doc["Resources"].items():
        if res["Type"] == "AWS::Lambda::Function":
            s3.put_object(Bucket=ARTIFACT_BUCKET, Key=res["Properties"]["Code"]["S3Key"], Body=code)
    cfn = client("cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(doc), Capabilities=["CAPABILITY_IAM"])
    deadline = time.time() + 120
    while True:
        status = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
        if status.endswith("_COMPLETE") or status.endswith("_FAILED") or time.time() > deadline:
            break
        time.sleep(0.5)
    if status != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=STACK)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events if "FAILED" in e["ResourceStatus"]]
        raise CheckFailed([f"stack ended {status}"] + reasons)
    listed = cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in listed}
    problems = []
    missing = sorted({rid for rid, r in doc["Resources"].items() if "Condition" not in r} - set(physical))
    if missing:
        problems.append(f"resources the stack did not create: {missing}")

    resolve = Resolver(doc, physical, client)
    via_api = {}
    for rid, res in sorted(filtered.items()):
        if res["Type"] in VIA_API and "Condition" not in res:
            props = resolve(_rewrite(res["Properties"], filtered, {**doc["Resources"], **filtered}))
            via_api[rid] = _create_via_api(res["Type"], rid, props, client)

    problems += _inspect(template_path, doc, filtered, physical, client)
    if problems:
        raise CheckFailed(problems)
    by_type = {}
    for rid in physical:
        by_type.setdefault(doc["Resources"][rid]["Type"], []).append(rid)
    return {
        "stack_resources": len(physical),
        "by_type": {k: len(v) for k, v in sorted(by_type.items())},
        "filtered": sorted(f"{rid} ({res['Type']})" for rid, res in filtered.items()),
        "created_via_api": sorted(via_api),
    }


def _differences(source, deployed, path):
    """Where the deployed definition differs from the source other than a substituted ARN."""
    if isinstance(source, dict) and isinstance(deployed, dict):
        if set(source) != set(deployed):
            return [f"{path}: keys {sorted(set(source) ^ set(deployed))} differ"]
        return [p for k in source for p in _differences(source[k], deployed[k], f"{path}.{k}")]
    if isinstance(source, list) and isinstance(deployed, list) and len(source) == len(deployed):
        return [p for i, (a, b) in enumerate(zip(source, deployed)) for p in _differences(a, b, f"{path}[{i}]")]
    if isinstance(source, str) and source.startswith("${") and source.endswith("}"):
        ok = isinstance(deployed, str) and deployed.startswith("arn:aws:lambda:")
        return [] if ok else [f"{path}: {source} became {deployed!r}, not a Lambda ARN"]
    return [] if source == deployed else [f"{path}: {source!r} became {deployed!r}"]


def _count(resources, kind):
    """Unconditional resources of one type: what the stack creates with default parameters."""
    return sum(1 for r in resources.values() if r["Type"] == kind and "Condition" not in r)


def _inspect(template_path, doc, filtered, physical, client):
    """Checks the created resources through each service's API against the template."""
    problems = []
    res = doc["Resources"]
    subs = state_machines(load(template_path))[0][1]["Properties"].get("DefinitionSubstitutions", {})
    ddb = client("dynamodb")
    for rid, keys, ttl in (
        ("StateTable", [("pk", "HASH")], True),
        ("ApprovalsTable", [("pk", "HASH")], True),
        ("AuditTable", [("execution", "HASH"), ("seq", "RANGE")], False),
    ):
        if rid not in physical:
            problems.append(f"{rid} was not created")
            continue
        table = ddb.describe_table(TableName=physical[rid])["Table"]
        got = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
        if got != keys:
            problems.append(f"{rid}: key schema {got}, expected {keys}")
        if table.get("BillingModeSummary", {}).get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{rid}: not PAY_PER_REQUEST")
        want_ttl = res[rid]["Properties"].get("TimeToLiveSpecification", {}).get("AttributeName")
        if ttl != (want_ttl == "ttl"):
            problems.append(f"{rid}: TTL attribute {want_ttl!r} contradicts the contract")
        if rid == "AuditTable" and not res[rid]["Properties"].get("DeletionProtectionEnabled"):
            problems.append("AuditTable: deletion protection is off")
    sqs = client("sqs")
    for queue, dlq in (("IntakeQueue", "IntakeDeadLetterQueue"), ("ScanQueue", "ScanDeadLetterQueue")):
        if queue not in physical or dlq not in physical:
            problems.append(f"{queue} or {dlq} was not created")
            continue
        attrs = sqs.get_queue_attributes(QueueUrl=physical[queue], AttributeNames=["All"])["Attributes"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=physical[dlq], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.loads(attrs.get("RedrivePolicy", "{}"))
        if redrive.get("deadLetterTargetArn") != dlq_arn:
            problems.append(f"{queue}: RedrivePolicy {redrive} does not target {dlq}")
        if int(redrive.get("maxReceiveCount", 0)) < 1:
            problems.append(f"{queue}: no maxReceiveCount")
    sfn = client("stepfunctions")
    lam = client("lambda")
    machines = sfn.list_state_machines()["stateMachines"]
    if [m["name"] for m in machines] != [f"{STACK}-cert-renewal"]:
        problems.append(f"state machines: {[m['name'] for m in machines]}")
    for m in machines:
        definition = sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])["definition"]
        if "${" in definition:
            problems.append(f"{m['name']}: definition still has placeholders")
        parsed = json.loads(definition)
        _, source = read_definition(template_path, state_machines(load(template_path))[0][1])
        problems += [f"{m['name']}: {p}" for p in _differences(json.loads(source), parsed, "$")]
        named = set()
        for state in parsed["States"].values():
            arn = state.get("Resource", "")
            if arn.startswith("arn:aws:states:::lambda:invoke"):
                arn = state["Parameters"]["FunctionName"]
            if arn.startswith("arn:aws:lambda:"):
                named.add(arn)
        for arn in sorted(named):
            try:
                lam.get_function(FunctionName=arn)
            except Exception as e:
                problems.append(f"{m['name']} names {arn}, which moto's Lambda does not know: {e}")
        if len(named) != len(subs):
            problems.append(f"{m['name']} names {len(named)} distinct functions, expected {len(subs)}")
    functions = lam.list_functions()["Functions"]
    if len(functions) != _count(res, "AWS::Lambda::Function"):
        problems.append(f"{len(functions)} functions, expected {_count(res, 'AWS::Lambda::Function')}")
    # moto's CloudFormation drops Architectures (the consistency check covers it).
    for f in functions:
        if f.get("Runtime") != "provided.al2023" or f.get("Handler") != "bootstrap":
            problems.append(f"{f['FunctionName']}: {f.get('Runtime')} {f.get('Handler')}")
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    if len(mappings) != _count(res, "AWS::Lambda::EventSourceMapping"):
        problems.append(f"{len(mappings)} event source mappings, expected {_count(res, 'AWS::Lambda::EventSourceMapping')}")
    for mapping in mappings:
        if mapping.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
            problems.append(f"mapping {mapping['EventSourceArn']}: {mapping.get('FunctionResponseTypes')}")
    sched = client("scheduler")
    schedules = sched.list_schedules()["Schedules"]
    if len(schedules) != _count(filtered, "AWS::Scheduler::Schedule"):
        problems.append(f"{len(schedules)} schedules, expected {_count(filtered, 'AWS::Scheduler::Schedule')}")
    for s in schedules:
        got = sched.get_schedule(Name=s["Name"])
        if s["Name"].endswith("-chat-card-refresh"):
            chat_arn = lam.get_function(FunctionName=physical["ChatApprovalFunction"])["Configuration"]["FunctionArn"]
            if got["ScheduleExpression"] != "rate(1 minute)":
                problems.append(f"schedule {s['Name']}: {got['ScheduleExpression']}, not every minute")
            if not got["Target"]["Arn"].startswith(chat_arn):
                problems.append(f"schedule {s['Name']} targets {got['Target']['Arn']}, not the chat-approval function")
            continue
        if got.get("ScheduleExpressionTimezone") != "UTC" or not got["ScheduleExpression"].startswith("cron("):
            problems.append(f"schedule {s['Name']}: {got.get('ScheduleExpression')} {got.get('ScheduleExpressionTimezone')}")
        scan_arn = lam.get_function(FunctionName=physical["ScanFunction"])["Configuration"]["FunctionArn"]
        if not got["Target"]["Arn"].startswith(scan_arn):
            problems.append(f"schedule {s['Name']} targets {got['Target']['Arn']}, not the scan function")
    alarms = {a["AlarmName"]: a for a in client("cloudwatch").describe_alarms()["MetricAlarms"]}
    dead = alarms.get(f"{STACK}-ScanDeadMansSwitchAlarm")
    if not dead:
        problems.append("the dead-man's switch alarm was not created")
    elif dead["TreatMissingData"] != "breaching" or dead["Period"] * dead["EvaluationPeriods"] != 26 * 3600:
        problems.append(f"dead-man's switch: {dead['Period']} s x {dead['EvaluationPeriods']}, missing data {dead['TreatMissingData']}")
    if len(alarms) != _count(filtered, "AWS::CloudWatch::Alarm"):
        problems.append(f"{len(alarms)} alarms, expected {_count(filtered, 'AWS::CloudWatch::Alarm')}")
    secrets = client("secretsmanager").list_secrets()["SecretList"]
    if len(secrets) != _count(filtered, "AWS::SecretsManager::Secret"):
        problems.append(f"{len(secrets)} secrets, expected {_count(filtered, 'AWS::SecretsManager::Secret')}")
    return problems
