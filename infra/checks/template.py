"""Loading, packaging and transforming the SAM template, and the checks that tie it to the
workspace: every function names a binary of a crate in functions/, every crate is deployed,
and the state machine definition's ${...} placeholders match DefinitionSubstitutions.

The repository layout is read relative to the template: <repo>/infra/template.yaml, with
<repo>/Cargo.toml, <repo>/functions/*/Cargo.toml and the definition the template names.
"""

import copy
import json
import os
import re
import tomllib

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

#: The region and account the offline transform and the rendered ARNs use.
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "certops"
#: Where the packaging emulation pretends `sam package` uploaded the artifacts.
ARTIFACT_BUCKET = "certops-artifacts"

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


class CheckFailed(Exception):
    """A check found problems; the message lists each one on its own line."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class NoNetworkPolicyLoader:
    """The managed-policy loader SAM asks when a template names AWS managed policies by name.

    The check runs without network access, so this loader knows no policies and nothing is
    looked up in IAM. certops's template attaches no managed policies (every role is explicit),
    so SAM never needs one.
    """

    def load(self):
        return {}


def load(path):
    """The template as a dict, with CloudFormation's short tags (!Ref, !Sub, ...) expanded."""
    with open(path, encoding="utf-8") as f:
        return yaml_parse(f.read())


def repo_of(template_path):
    """The repository root of infra/template.yaml."""
    return os.path.dirname(os.path.dirname(os.path.abspath(template_path)))


def sam_functions(template):
    """(logical id, resource) of every AWS::Serverless::Function."""
    return [
        (name, res)
        for name, res in template.get("Resources", {}).items()
        if res.get("Type") == "AWS::Serverless::Function"
    ]


def state_machines(template):
    """(logical id, resource) of every AWS::Serverless::StateMachine."""
    return [
        (name, res)
        for name, res in template.get("Resources", {}).items()
        if res.get("Type") == "AWS::Serverless::StateMachine"
    ]


def function_property(template, res, key):
    """A function property, falling back to Globals.Function like SAM does."""
    props = res.get("Properties", {})
    if key in props:
        return props[key]
    return template.get("Globals", {}).get("Function", {}).get(key)


def definition_path(template_path, res):
    """The local definition file a state machine's DefinitionUri names."""
    uri = res.get("Properties", {}).get("DefinitionUri")
    if not isinstance(uri, str):
        raise CheckFailed(["state machine DefinitionUri must be a local path for `sam build`"])
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(template_path)), uri))


def read_definition(template_path, res):
    """(path, text) of a state machine's definition."""
    path = definition_path(template_path, res)
    if not os.path.isfile(path):
        raise CheckFailed([f"DefinitionUri names {path}, which does not exist"])
    with open(path, encoding="utf-8") as f:
        return path, f.read()


def package(template_path):
    """What `sam build && sam package` hand to CloudFormation, without building or uploading.

    Local CodeUri and DefinitionUri paths become the S3 URIs `sam package` would write (one
    artifact per function, as `sam build` produces one per function). The transform itself
    never reads them.
    """
    template = load(template_path)
    packaged = copy.deepcopy(template)
    for name, res in sam_functions(packaged):
        res.setdefault("Properties", {})["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{name}.zip"
    glob = packaged.get("Globals", {}).get("Function", {})
    glob.pop("CodeUri", None)
    for name, res in state_machines(packaged):
        if isinstance(res.get("Properties", {}).get("DefinitionUri"), str):
            res["Properties"]["DefinitionUri"] = f"s3://{ARTIFACT_BUCKET}/{name}.asl.json"
    return packaged


def transformed(template_path):
    """The CloudFormation template the SAM transform produces, computed offline."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.setdefault("AWS_REGION", REGION)
    packaged = package(template_path)
    try:
        return transform(packaged, {}, NoNetworkPolicyLoader())
    except Exception as e:  # the translator raises several unrelated exception types
        raise CheckFailed([f"the SAM transform failed: {e}"]) from e


# --------------------------------------------------------------------------- workspace


def workspace_binaries(repo):
    """{binary name: crate directory} for every crate under functions/."""
    out = {}
    problems = []
    base = os.path.join(repo, "functions")
    if not os.path.isdir(base):
        raise CheckFailed([f"{base} does not exist"])
    for entry in sorted(os.listdir(base)):
        manifest = os.path.join(base, entry, "Cargo.toml")
        if not os.path.isfile(manifest):
            continue
        with open(manifest, "rb") as f:
            cargo = tomllib.load(f)
        bins = [b.get("name") for b in cargo.get("bin", []) if b.get("name")]
        if not bins and os.path.isfile(os.path.join(base, entry, "src", "main.rs")):
            bins = [cargo.get("package", {}).get("name")]
        if not bins:
            problems.append(f"functions/{entry} builds no binary")
        for b in bins:
            out[b] = f"functions/{entry}"
    if problems:
        raise CheckFailed(problems)
    return out


def workspace_members(manifest_dir):
    """The workspace members of manifest_dir/Cargo.toml (empty when it is no workspace)."""
    manifest = os.path.join(manifest_dir, "Cargo.toml")
    if not os.path.isfile(manifest):
        return None
    with open(manifest, "rb") as f:
        cargo = tomllib.load(f)
    return [os.path.normpath(m) for m in cargo.get("workspace", {}).get("members", [])]


def check_functions(template_path):
    """Check 4a: functions <-> crates, and each function's build and runtime settings."""
    template = load(template_path)
    repo = repo_of(template_path)
    binaries = workspace_binaries(repo)
    problems = []
    named = {}
    for name, res in sam_functions(template):
        meta = res.get("Metadata", {})
        binary = meta.get("BuildProperties", {}).get("Binary")
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name}: Metadata.BuildMethod must be rust-cargolambda")
        if not binary:
            problems.append(f"{name}: Metadata.BuildProperties.Binary names no binary")
            continue
        if binary in named:
            problems.append(f"{name}: binary {binary} is already deployed by {named[binary]}")
        named[binary] = name
        crate = binaries.get(binary)
        if crate is None:
            problems.append(f"{name}: binary {binary} is built by no crate in functions/")
            continue
        code_uri = function_property(template, res, "CodeUri")
        if not isinstance(code_uri, str):
            problems.append(f"{name}: CodeUri must be the local workspace path")
        else:
            code_dir = os.path.normpath(
                os.path.join(os.path.dirname(os.path.abspath(template_path)), code_uri)
            )
            members = workspace_members(code_dir)
            if members is None:
                problems.append(f"{name}: CodeUri {code_uri} has no Cargo.toml for cargo lambda")
            elif os.path.normpath(os.path.relpath(os.path.join(repo, crate), code_dir)) not in members:
                problems.append(
                    f"{name}: {crate} is not a member of the workspace at CodeUri {code_uri}, "
                    f"so `cargo lambda build --bin {binary}` there cannot find it"
                )
        expect = {
            "Runtime": "provided.al2023",
            "Handler": "bootstrap",
            "Architectures": ["arm64"],
            "Tracing": "Active",
        }
        for key, want in expect.items():
            got = function_property(template, res, key)
            if got != want:
                problems.append(f"{name}: {key} is {got!r}, expected {want!r}")
        logging = function_property(template, res, "LoggingConfig") or {}
        if logging.get("LogFormat") != "JSON":
            problems.append(f"{name}: LoggingConfig.LogFormat must be JSON")
        env = (function_property(template, res, "Environment") or {}).get("Variables", {})
        if env.get("CERTOPS_BACKEND") != "aws":
            problems.append(f"{name}: CERTOPS_BACKEND must be aws")
        for key in ("MemorySize", "Timeout"):
            if not isinstance(res.get("Properties", {}).get(key), int):
                problems.append(f"{name}: {key} must be chosen for the step (an integer)")
    for binary, crate in sorted(binaries.items()):
        if binary not in named:
            problems.append(f"{crate} (binary {binary}) is not deployed by any function in the template")
    if problems:
        raise CheckFailed(problems)
    return named


def check_substitutions(template_path):
    """Check 4b: every ${...} of each definition has a substitution, and vice versa."""
    template = load(template_path)
    problems = []
    machines = state_machines(template)
    if not machines:
        raise CheckFailed(["the template has no AWS::Serverless::StateMachine"])
    report = {}
    for name, res in machines:
        path, text = read_definition(template_path, res)
        try:
            json.loads(text)
        except ValueError as e:
            problems.append(f"{name}: {path} is not JSON: {e}")
        used = set(PLACEHOLDER.findall(text))
        subs = set((res.get("Properties", {}).get("DefinitionSubstitutions") or {}).keys())
        for missing in sorted(used - subs):
            problems.append(f"{name}: ${{{missing}}} in {os.path.basename(path)} has no DefinitionSubstitutions entry")
        for unused in sorted(subs - used):
            problems.append(f"{name}: DefinitionSubstitutions.{unused} is used nowhere in {os.path.basename(path)}")
        report[name] = sorted(used)
    if problems:
        raise CheckFailed(problems)
    return report


# --------------------------------------------------------------------------- rendering


def physical_function_name(logical_id):
    """The name CloudFormation would give an unnamed function of stack `certops`."""
    return f"{STACK}-{logical_id}-A1B2C3D4E5F6"[:64]


def function_arn(logical_id):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical_function_name(logical_id)}"


def resolve_arn(resources, value):
    """A realistic ARN for a substitution value of the transformed template."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref" and arg in resources:
            res = resources[arg]
            kind = res.get("Type")
            if kind == "AWS::Lambda::Version":
                target = res["Properties"]["FunctionName"]
                return f"{resolve_arn(resources, {'Fn::GetAtt': [target['Ref'], 'Arn']})}:1"
            if kind == "AWS::Lambda::Alias":
                target = res["Properties"]["FunctionName"]
                return f"{resolve_arn(resources, {'Fn::GetAtt': [target['Ref'], 'Arn']})}:{res['Properties']['Name']}"
            if kind == "AWS::Lambda::Function":
                return physical_function_name(arg)
            # Any other resource's Ref is a name or URL, never a Task resource: render it
            # as CloudFormation would, so the validator sees what AWS would.
            return f"{STACK}-{arg}-A1B2C3D4E5F6"
        if fn == "Fn::GetAtt":
            target, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            if resources.get(target, {}).get("Type") == "AWS::Lambda::Function" and attr == "Arn":
                return function_arn(target)
    raise CheckFailed([f"cannot render the substitution {json.dumps(value)}"])


def render_definition(template_path):
    """The definition with the template's DefinitionSubstitutions applied, as deployed."""
    template = load(template_path)
    out = transformed(template_path)
    resources = out["Resources"]
    name, res = state_machines(template)[0]
    _, text = read_definition(template_path, res)
    cfn = resources[name]["Properties"]
    subs = {k: resolve_arn(resources, v) for k, v in (cfn.get("DefinitionSubstitutions") or {}).items()}

    def sub(m):
        key = m.group(1)
        if key not in subs:
            raise CheckFailed([f"${{{key}}} has no DefinitionSubstitutions entry"])
        return subs[key]

    return PLACEHOLDER.sub(sub, text), subs


# --------------------------------------------------------------------------- samconfig

#: How SAM CLI reads `parameter_overrides` (Key="value" pairs, values may hold spaces).
OVERRIDE = re.compile(r'(\w+)="((?:\\.|[^"\\])*)"')


def check_samconfig(template_path):
    """Check 4c: samconfig.toml's default environment deploys this template safely."""
    path = os.path.join(os.path.dirname(os.path.abspath(template_path)), "samconfig.toml")
    if not os.path.isfile(path):
        raise CheckFailed([f"{path} does not exist"])
    with open(path, "rb") as f:
        config = tomllib.load(f)
    problems = []
    default = config.get("default", {})
    stack = default.get("global", {}).get("parameters", {}).get("stack_name") or default.get(
        "deploy", {}
    ).get("parameters", {}).get("stack_name")
    if not stack:
        problems.append("samconfig.toml: default has no stack_name")
    deploy = default.get("deploy", {}).get("parameters", {})
    if not deploy.get("region"):
        problems.append("samconfig.toml: default.deploy has no region")
    caps = deploy.get("capabilities", "")
    caps = caps.split() if isinstance(caps, str) else caps
    if not {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"} & set(caps):
        problems.append("samconfig.toml: capabilities must include CAPABILITY_IAM or CAPABILITY_NAMED_IAM")
    if deploy.get("resolve_s3") is not True:
        problems.append("samconfig.toml: resolve_s3 must be true")
    if deploy.get("confirm_changeset") is not True:
        problems.append("samconfig.toml: confirm_changeset must be true")
    overrides = dict(OVERRIDE.findall(deploy.get("parameter_overrides", "")))
    params = load(template_path).get("Parameters", {})
    for key, value in overrides.items():
        if key not in params:
            problems.append(f"samconfig.toml: override {key} is no template parameter")
        elif "AllowedValues" in params[key] and value not in [str(v) for v in params[key]["AllowedValues"]]:
            problems.append(f"samconfig.toml: {key}={value!r} is not an allowed value")
        elif "AllowedPattern" in params[key] and not re.fullmatch(params[key]["AllowedPattern"], value):
            problems.append(f"samconfig.toml: {key}={value!r} does not match {params[key]['AllowedPattern']}")
    if problems:
        raise CheckFailed(problems)
    return {"stack_name": stack, "overrides": overrides}
