"""The HTTP scoring service (``paddlemix-iqa serve``): a pipeline config's ops behind Starlette on uvicorn.

Nothing heavy is imported here: ``paddlemix-iqa --help`` builds the ``serve`` parser from
:mod:`paddlemix_iqa.service.server` without importing Starlette, uvicorn or any scorer.
"""
