"""
Load tools for the chat server, and the bare Twisted baseline every figure
is compared against.

    python -m benchmarks load ...   one run of one scenario against a host and port
    python -m benchmarks run ...    every scenario against our server and the baseline
    python -m benchmarks users ...  write a users file (plain or hashed)
    python -m benchmarks stacks ... summarize a py-spy profile of a server

See benchmarks/README.rst.
"""
