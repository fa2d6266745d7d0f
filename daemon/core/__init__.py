"""Pure rules: decisions that take data and return data (no git, sqlite3, ray or HTTP).

ownership.py  who may change which models.d/<user>/ paths, judged on what a push or a
              commit range does to the tree (one wording, one fix, for the hook and argusd)
"""
