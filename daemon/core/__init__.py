"""Pure rules: decisions that take data and return data (no file system, git, sqlite3, ray or
HTTP; tests/unit/test_import_rules.py enforces it).

verdict.py          the one verdict on a user's spec files: lint, the hook, sync and the API ask it
spec.py             ServingSpec: what a user writes, its rules, how it resolves
yamldoc.py          one small YAML mapping loaded safely, with every key's and value's position
validation.py       pydantic's errors as positioned, human problems
specedit.py         one top-level value of a spec changed or removed, nothing else of the file
engine_policy.py    which vLLM engine arguments a user may set
layout.py           where specs live in the repo and which tree entries argus reads
ownership.py        who may change which models.d/<user>/ paths, judged on what a push does
quota.py            per-user GPU quotas
folders.py          a model or adapter folder judged from the facts a shell read of it
adapters.py         the rules that tie a LoRA adapter to its base model
records.py          the records argus keeps: a model, an event, a refused spec file
states.py           the words those records are made of, as enums
describe.py         how a model's state and events read to a person
forge.py            a GitOps repo on a forge: its URL, fetch backoff, webhook signatures
traffic.py          a model's recent traffic from Serve's per-deployment metrics
replica_contract.py what argusd and the code in its Ray replicas share (standard library only)
"""
