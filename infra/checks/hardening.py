"""Check 7: a first deploy to a real account does no harm (issue 11), over the transformed
template and, where SAM hides a setting, the source template.

- config:       every function reads CERTOPS_CONFIG_ARN, a secret created by the stack and
                readable by every function's role; none sets CERTOPS_ALLOW_STAND_INS; the scan
                schedule's State comes from a parameter whose default is DISABLED.
- state-keys:   every grant on the state table carries a dynamodb:LeadingKeys condition with
                the role's own logical tables, never `audit-head#*`; DeleteItem only on
                `locks#*`.
- audit:        the audit table is retained, has deletion protection, and no role may
                UpdateItem, DeleteItem, BatchWriteItem or run PartiQL on it.
- acm:          acm:ImportCertificate / AddTagsToCertificate only on certificate ARNs, each
                statement conditioned on aws:ResourceTag/certops:managed or
                aws:RequestTag/certops:managed.
- itsm-secret:  the ITSM secret (variable and grant) goes to exactly the functions whose
                handler calls the ITSM port (`deps.itsm` in functions/<crate>/src).
- versions:     Globals.Function.AutoPublishAliasAllProperties is true.
- schedule:     every schedule is named per stack and has a dead-letter queue; the scan
                schedule's function has an on-failure destination; the only other schedule
                is the chat card refresh, every minute, on the chat-approval function.
- limits:       functions behind the HTTP API time out before its 30 s; every maxReceiveCount
                is at least 5; every dead-letter queue has a RedriveAllowPolicy.
- alarms:       every SNS topic is encrypted with a customer-managed key of this stack whose
                policy lets cloudwatch.amazonaws.com Decrypt and GenerateDataKey*.
"""

import os

import iam
from template import CheckFailed, load, repo_of, sam_functions, transformed

HTTP_API_LIMIT = 30
MIN_RECEIVES = 5
AUDIT_FORBIDDEN = {
    "dynamodb:updateitem",
    "dynamodb:deleteitem",
    "dynamodb:batchwriteitem",
    "dynamodb:partiqlupdate",
    "dynamodb:partiqldelete",
    "dynamodb:partiqlinsert",
}


def _list(v):
    return iam._as_list(v)


def _by_type(resources, kind):
    return {k: v for k, v in resources.items() if v.get("Type") == kind}


def _statements(resources):
    for role, where, doc in iam.role_documents(resources):
        for i, st in enumerate(_list(doc.get("Statement"))):
            if isinstance(st, dict) and st.get("Effect") == "Allow":
                yield role, f"{where} statement {i}", st


def _actions(st):
    return [a.lower() for a in _list(st.get("Action")) if isinstance(a, str)]


def _names(value):
    return iam.referenced_ids(value)


def _role_functions(resources):
    """{role logical id: [function logical ids]}."""
    out = {}
    for fid, fn in _by_type(resources, "AWS::Lambda::Function").items():
        role = iam._role_of(fn)
        if role:
            out.setdefault(role, []).append(fid)
    return out


def _uses_itsm(repo, binary):
    """Whether the crate building `binary` calls the ITSM port."""
    import template

    crate = template.workspace_binaries(repo).get(binary)
    if crate is None:
        return False
    src = os.path.join(repo, crate, "src")
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    text = f.read()
                if "deps.itsm" in text or ".itsm\n" in text:
                    return True
    return False


def check(template_path):
    out = transformed(template_path)
    source = load(template_path)
    resources = out.get("Resources", {})
    params = source.get("Parameters", {})
    problems = []
    functions = _by_type(resources, "AWS::Lambda::Function")
    role_fns = _role_functions(resources)
    report = {}

    # config
    secrets = _by_type(resources, "AWS::SecretsManager::Secret")
    config_ids = set()
    for fid, fn in functions.items():
        env = fn.get("Properties", {}).get("Environment", {}).get("Variables", {})
        ids = _names(env.get("CERTOPS_CONFIG_ARN"))
        if not ids or not ids <= set(secrets):
            problems.append(f"{fid}: CERTOPS_CONFIG_ARN must name the stack's configuration secret")
        config_ids |= ids
        if "CERTOPS_ALLOW_STAND_INS" in env:
            problems.append(f"{fid}: CERTOPS_ALLOW_STAND_INS keeps embedded stand-ins on AWS; never set it here")
    granted_config = {}
    for role, where, st in _statements(resources):
        if "secretsmanager:getsecretvalue" in _actions(st) and _names(st.get("Resource")) & config_ids:
            granted_config[role] = True
    for role, fids in role_fns.items():
        if not granted_config.get(role):
            problems.append(f"{role}: cannot read the configuration secret its function(s) {fids} read at init")
    schedules = _by_type(resources, "AWS::Scheduler::Schedule")
    if not schedules:
        problems.append("no AWS::Scheduler::Schedule: the daily scan is missing")
    for sid, sch in schedules.items():
        props = sch.get("Properties", {})
        targets = {iam.function_of(resources, t) for t in _names(props.get("Target", {}).get("Arn"))}
        if targets == {"ChatApprovalFunction"}:
            # The card refresh: idempotent, harmless on an unconfigured stack (no open
            # cards), and what keeps chat cards true on AWS, so it runs from the start.
            if props.get("ScheduleExpression") != "rate(1 minute)":
                problems.append(f"{sid}: the chat card refresh must run every minute (rate(1 minute)); got {props.get('ScheduleExpression')!r}")
            if "AWS::StackName" not in str(props.get("Name")):
                problems.append(f"{sid}: Name must include the stack name (a second stack's schedule collides); got {props.get('Name')!r}")
            if not props.get("Target", {}).get("DeadLetterConfig", {}).get("Arn"):
                problems.append(f"{sid}: the schedule has no dead-letter queue")
            continue
        if targets != {"ScanFunction"}:
            problems.append(f"{sid}: a schedule on {sorted(targets)}; only the scan and the chat card refresh are scheduled")
        state = props.get("State")
        pname = state.get("Ref") if isinstance(state, dict) else None
        if pname not in params or params[pname].get("Default") != "DISABLED":
            problems.append(
                f"{sid}: State must come from a parameter whose default is DISABLED "
                f"(the scan stays off until configured); got {state!r}"
            )
        name = props.get("Name")
        if "AWS::StackName" not in str(name):
            problems.append(f"{sid}: Name must include the stack name (a second stack's schedule collides); got {name!r}")
        if not props.get("Target", {}).get("DeadLetterConfig", {}).get("Arn"):
            problems.append(f"{sid}: the schedule has no dead-letter queue")
        target = _names(props.get("Target", {}).get("Arn"))
        for t in target:
            fid = iam.function_of(resources, t)
            has_dest = any(
                _names(c.get("Properties", {}).get("FunctionName")) == {fid}
                and c.get("Properties", {}).get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                for c in _by_type(resources, "AWS::Lambda::EventInvokeConfig").values()
            )
            if not has_dest:
                problems.append(f"{sid}: its function {fid} has no on-failure destination")

    # state-keys, audit
    tables = _by_type(resources, "AWS::DynamoDB::Table")
    audit = [t for t, r in tables.items() if any(k.get("KeyType") == "RANGE" for k in r["Properties"].get("KeySchema", []))]
    state = [t for t in tables if t.startswith("State")]
    for t in audit:
        r = tables[t]
        if r.get("DeletionPolicy") != "Retain" or not r["Properties"].get("DeletionProtectionEnabled"):
            problems.append(f"{t}: the audit table (and its chain heads) must be retained with deletion protection")
    for role, where, st in _statements(resources):
        named = _names(st.get("Resource"))
        acts = [a for a in _actions(st) if a.startswith("dynamodb:")]
        if not acts:
            continue
        if named & set(audit):
            bad = sorted(set(acts) & AUDIT_FORBIDDEN)
            if bad:
                problems.append(f"{where}: {', '.join(bad)} on the audit table; records and heads are conditional puts only")
        if named & set(state):
            keys = (
                (st.get("Condition") or {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
                or (st.get("Condition") or {}).get("ForAllValues:StringEquals", {}).get("dynamodb:LeadingKeys")
            )
            if not keys:
                problems.append(f"{where}: {', '.join(acts)} on the state table without a dynamodb:LeadingKeys condition")
                continue
            keys = _list(keys)
            if any(k.startswith("audit-head") for k in keys):
                problems.append(f"{where}: grants audit-head keys in the state table; heads live in the audit table")
            if "dynamodb:deleteitem" in acts and set(keys) != {"locks#*"}:
                problems.append(f"{where}: DeleteItem on {keys}; only locks may be deleted")

    # acm
    for role, where, st in _statements(resources):
        acts = set(_actions(st)) & {"acm:importcertificate", "acm:addtagstocertificate"}
        if not acts:
            continue
        res = [str(r) for r in _list(st.get("Resource"))]
        if any(r == "*" or "certificate/" not in r for r in res):
            problems.append(f"{where}: {', '.join(sorted(acts))} must name certificate ARNs, not {res}")
        cond = st.get("Condition") or {}
        tags = [k for op in cond.values() if isinstance(op, dict) for k in op]
        if not any(k in ("aws:ResourceTag/certops:managed", "aws:RequestTag/certops:managed") for k in tags):
            problems.append(
                f"{where}: {', '.join(sorted(acts))} without an aws:ResourceTag/certops:managed or "
                "aws:RequestTag/certops:managed condition can overwrite any imported certificate"
            )

    # itsm-secret
    repo = repo_of(template_path)
    itsm_ids = {s for s in secrets if s.startswith("Itsm")}
    itsm_roles = set()
    for role, where, st in _statements(resources):
        if "secretsmanager:getsecretvalue" in _actions(st) and _names(st.get("Resource")) & itsm_ids:
            itsm_roles.add(role)
    uses = []
    for fid, fn in functions.items():
        binary = fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        env = fn.get("Properties", {}).get("Environment", {}).get("Variables", {})
        role = iam._role_of(fn)
        needs = _uses_itsm(repo, binary)
        if needs:
            uses.append(fid)
        has_env = bool(_names(env.get("CERTOPS_ITSM_SECRET_ARN")) & itsm_ids)
        if needs and not (has_env and role in itsm_roles):
            problems.append(f"{fid}: its handler calls the ITSM port but lacks CERTOPS_ITSM_SECRET_ARN or the grant")
        if not needs and (has_env or role in itsm_roles):
            problems.append(f"{fid}: gets the ITSM secret, but its handler never calls the ITSM port")
    report["itsm_secret"] = sorted(uses)

    # versions
    glob = source.get("Globals", {}).get("Function", {})
    if glob.get("AutoPublishAlias") and glob.get("AutoPublishAliasAllProperties") is not True:
        problems.append(
            "Globals.Function: AutoPublishAliasAllProperties must be true, or a changed timeout, "
            "role or environment publishes no version"
        )

    # limits
    api_fns = set()
    for fid, fn in sam_functions(source):
        events = (fn.get("Properties", {}).get("Events") or {}).values()
        if any(e.get("Type") in ("HttpApi", "Api") for e in events):
            api_fns.add(fid)
            timeout = fn.get("Properties", {}).get("Timeout")
            if not isinstance(timeout, int) or timeout >= HTTP_API_LIMIT:
                problems.append(f"{fid}: Timeout {timeout} must stay below the HTTP API's {HTTP_API_LIMIT} s")
    queues = _by_type(resources, "AWS::SQS::Queue")
    dlqs = set()
    for qid, q in queues.items():
        rp = q.get("Properties", {}).get("RedrivePolicy")
        if rp:
            dlqs |= _names(rp.get("deadLetterTargetArn"))
            if int(rp.get("maxReceiveCount", 0)) < MIN_RECEIVES:
                problems.append(f"{qid}: maxReceiveCount {rp.get('maxReceiveCount')} is below {MIN_RECEIVES}")
    for d in sorted(dlqs):
        if not queues.get(d, {}).get("Properties", {}).get("RedriveAllowPolicy"):
            problems.append(f"{d}: a dead-letter queue without a RedriveAllowPolicy")

    # alarms
    keys = _by_type(resources, "AWS::KMS::Key")
    for tid, topic in _by_type(resources, "AWS::SNS::Topic").items():
        key = _names(topic.get("Properties", {}).get("KmsMasterKeyId")) & set(keys)
        if not key:
            problems.append(f"{tid}: not encrypted with a customer-managed key of this stack")
            continue
        doc = keys[next(iter(key))].get("Properties", {}).get("KeyPolicy", {})
        ok = any(
            st.get("Effect") == "Allow"
            and "cloudwatch.amazonaws.com" in _list((st.get("Principal") or {}).get("Service"))
            and {"kms:decrypt", "kms:generatedatakey*"} <= set(_actions(st))
            for st in _list(doc.get("Statement"))
        )
        if not ok:
            problems.append(f"{tid}: its key's policy does not let CloudWatch publish (kms:Decrypt, kms:GenerateDataKey*)")

    if problems:
        raise CheckFailed(problems)
    report["config_secret"] = sorted(config_ids)
    report["http_api_functions"] = sorted(api_fns)
    report["dead_letter_queues"] = sorted(dlqs)
    return report
