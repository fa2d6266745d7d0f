"""argusctl: the command line of argus. Imports the engine from `daemon`; never ray/vllm/torch
at import time, so commands that do not talk to the cluster start fast."""
