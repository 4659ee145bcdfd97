"""Check 5: least privilege over the transformed template.

- No wildcard action anywhere (`*`, `svc:*`, `svc:Get*`), and no NotAction / NotResource.
- A `*` resource only for actions AWS authorises on no resource type (RESOURCE_STAR_ALLOWED,
  each with its reason); every other action must name its resources.
- No AWS managed policy attachments: their statements cannot be checked here.
- Only the approval-callback function's role may complete a waiting task
  (states:SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat).
- The state machine's role may invoke exactly the functions its definition names.
"""

import importlib.util
import json
import os

from template import CheckFailed

#: Actions that may be granted on `*`, lower-case, with why AWS leaves no other choice.
RESOURCE_STAR_ALLOWED = {
    "xray:puttracesegments": "X-Ray authorises trace uploads on no resource type",
    "xray:puttelemetryrecords": "X-Ray authorises telemetry on no resource type",
    "xray:getsamplingrules": "X-Ray sampling rules have no resource type",
    "xray:getsamplingtargets": "X-Ray sampling targets have no resource type",
    "logs:createlogdelivery": "Step Functions log delivery: no resource type",
    "logs:getlogdelivery": "Step Functions log delivery: no resource type",
    "logs:updatelogdelivery": "Step Functions log delivery: no resource type",
    "logs:deletelogdelivery": "Step Functions log delivery: no resource type",
    "logs:listlogdeliveries": "Step Functions log delivery: no resource type",
    "logs:putresourcepolicy": "Step Functions log delivery: no resource type",
    "logs:describeresourcepolicies": "Step Functions log delivery: no resource type",
    "logs:describeloggroups": "Step Functions log delivery: no resource type",
    "secretsmanager:listsecrets": "listing secrets has no resource type",
    "elasticloadbalancing:describelisteners": "ELB Describe* has no resource type",
    "elasticloadbalancing:describelistenercertificates": "ELB Describe* has no resource type",
    "elasticloadbalancing:describetags": "ELB Describe* has no resource type",
    "acm:listcertificates": "listing certificates has no resource type",
    "states:sendtasksuccess": "task-token calls have no resource type (the token names the task)",
    "states:sendtaskfailure": "task-token calls have no resource type (the token names the task)",
    "states:sendtaskheartbeat": "task-token calls have no resource type (the token names the task)",
}

#: Allow-listed actions that do have a resource type but need `*` for one use (explained above).
#: None any more: a new ACM import is authorised on `certificate/*` with aws:RequestTag.
STAR_FOR_CREATION = set()

TASK_TOKEN_ACTIONS = {"states:sendtasksuccess", "states:sendtaskfailure", "states:sendtaskheartbeat"}

CALLBACK_BINARY = "certops-approval-callback"


def _as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def referenced_ids(value):
    """Logical ids a CloudFormation value refers to (Ref, GetAtt, ${X} / ${X.Attr} in Sub)."""
    out = set()
    if isinstance(value, dict):
        for fn, arg in value.items():
            if fn == "Ref" and isinstance(arg, str):
                out.add(arg)
            elif fn == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                out.add(target)
            elif fn == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                for name in _sub_names(text):
                    out.add(name.split(".", 1)[0])
                if isinstance(arg, list) and len(arg) > 1:
                    out |= referenced_ids(arg[1])
            else:
                out |= referenced_ids(arg)
    elif isinstance(value, list):
        for v in value:
            out |= referenced_ids(v)
    return out


def _sub_names(text):
    names = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return names
        end = text.find("}", start)
        if end < 0:
            return names
        name = text[start + 2 : end]
        if not name.startswith("!") and not name.startswith("AWS::"):
            names.append(name)
        i = end + 1


def role_documents(resources):
    """(role logical id, where, policy document) for every identity policy on a role."""
    docs = []
    for rid, res in resources.items():
        kind = res.get("Type")
        props = res.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for p in props.get("Policies", []) or []:
                docs.append((rid, f"{rid}.{p.get('PolicyName', '?')}", p.get("PolicyDocument", {})))
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            roles = _as_list(props.get("Roles")) + _as_list(props.get("RoleName"))
            targets = sorted({r for role in roles for r in referenced_ids(role)}) or ["?"]
            for r in targets:
                docs.append((r, rid, props.get("PolicyDocument", {})))
    return docs


def _role_of(res):
    role = res.get("Properties", {}).get("Role") or res.get("Properties", {}).get("RoleArn")
    ids = referenced_ids(role)
    return next(iter(ids)) if len(ids) == 1 else None


def callback_roles(resources):
    """Logical ids of the roles of the approval-callback function."""
    roles = set()
    for rid, res in resources.items():
        if res.get("Type") != "AWS::Lambda::Function":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if binary == CALLBACK_BINARY:
            role = _role_of(res)
            if role:
                roles.add(role)
    return roles


def function_of(resources, rid):
    """The function logical id a version, alias or function id stands for."""
    res = resources.get(rid, {})
    kind = res.get("Type")
    if kind == "AWS::Lambda::Function":
        return rid
    if kind in ("AWS::Lambda::Version", "AWS::Lambda::Alias"):
        ids = referenced_ids(res.get("Properties", {}).get("FunctionName"))
        return next(iter(ids), None)
    return None


def check(transformed):
    """Every problem of the transformed template's IAM, as one CheckFailed."""
    resources = transformed.get("Resources", {})
    problems = []
    stars = []
    for rid, res in resources.items():
        if res.get("Type") == "AWS::IAM::Role" and res.get("Properties", {}).get("ManagedPolicyArns"):
            problems.append(
                f"{rid}: attaches managed policies {json.dumps(res['Properties']['ManagedPolicyArns'])}; "
                "grant explicit statements instead"
            )
    allowed_callback = callback_roles(resources)
    if not allowed_callback:
        problems.append(f"no function with binary {CALLBACK_BINARY} and its own role was found")
    sm_invokes = {}
    for role, where, doc in role_documents(resources):
        for i, st in enumerate(_as_list(doc.get("Statement"))):
            label = f"{where} statement {i}"
            if st.get("Effect") != "Allow":
                continue
            if "NotAction" in st:
                problems.append(f"{label}: NotAction grants everything else; name the actions")
            if "NotResource" in st:
                problems.append(f"{label}: NotResource grants everything else; name the resources")
            actions = [a for a in _as_list(st.get("Action")) if isinstance(a, str)]
            lowered = [a.lower() for a in actions]
            for a in actions:
                if "*" in a:
                    problems.append(f"{label}: wildcard action {a!r}")
            res_list = _as_list(st.get("Resource"))
            if "*" in res_list:
                for a in lowered:
                    if a not in RESOURCE_STAR_ALLOWED:
                        problems.append(
                            f"{label}: {a} on resource '*' (not an action AWS requires '*' for)"
                        )
                    else:
                        stars.append(f"{role}: {a} on '*' ({RESOURCE_STAR_ALLOWED[a]})")
            for a in lowered:
                if a in TASK_TOKEN_ACTIONS and role not in allowed_callback:
                    problems.append(
                        f"{label}: {a} granted to {role}; only the approval-callback role may complete tasks"
                    )
                if a == "lambda:invokefunction":
                    sm_invokes.setdefault(role, set()).update(
                        filter(None, (function_of(resources, r) for r in referenced_ids(res_list)))
                    )
    for rid, res in resources.items():
        if res.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        role = _role_of(res)
        subs = res.get("Properties", {}).get("DefinitionSubstitutions") or {}
        named = {function_of(resources, r) for r in referenced_ids(list(subs.values()))} - {None}
        granted = sm_invokes.get(role, set())
        for extra in sorted(granted - named):
            problems.append(f"{role}: may invoke {extra}, which {rid}'s definition never names")
        for missing in sorted(named - granted):
            problems.append(f"{role}: cannot invoke {missing}, which {rid}'s definition names")
    if problems:
        raise CheckFailed(problems)
    return stars


def allow_list_is_justified():
    """Cross-checks RESOURCE_STAR_ALLOWED with the IAM action data cfn-lint ships.

    Every allow-listed action must exist, and must have no resource type - except the ones in
    STAR_FOR_CREATION, whose `*` is needed for creating the resource.
    """
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or spec.origin is None:
        raise CheckFailed(["cfn-lint is not installed (python3 -m pip install cfn-lint)"])
    path = os.path.join(os.path.dirname(spec.origin), "data", "AdditionalSpecs", "Policies.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    problems = []
    for action in sorted(RESOURCE_STAR_ALLOWED):
        service, name = action.split(":", 1)
        entry = data.get(service, {}).get("Actions", {}).get(name)
        if entry is None:
            problems.append(f"{action} is no IAM action")
        elif entry.get("Resources") and action not in STAR_FOR_CREATION:
            problems.append(f"{action} is authorised on {entry['Resources']}; it must not be granted on '*'")
    if problems:
        raise CheckFailed(problems)
    return len(RESOURCE_STAR_ALLOWED)
