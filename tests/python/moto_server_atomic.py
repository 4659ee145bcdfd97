"""moto's server with DynamoDB's documented atomicity.

DynamoDB applies each conditional write and each TransactWriteItems atomically, and a
strongly consistent read sees a transaction either whole or not at all. moto's threaded
server checks a transaction's conditions and applies its items without a lock, so two
concurrent conditional transactions can both pass their checks, and a read can see half a
transaction. The tests need the service's semantics (an audit chain must not fork under
concurrent appends), so this runs moto's own application with its DynamoDB requests
serialized by one lock; every other service (SQS long polls included) stays concurrent.

Usage: moto_server_atomic.py -H HOST -p PORT   (the arguments of moto_server)
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

DYNAMODB_TARGET = "DynamoDB_20120810."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    # As moto_server does: moto builds its own URLs (SQS queue URLs, the calls of a state
    # machine it executes) from this port.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic_dynamodb(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET):
            return app(environ, start_response)
        with lock:
            # The whole answer is produced under the lock: moto may build it lazily.
            return [b"".join(app(environ, start_response))]

    run_simple(args.host, args.port, atomic_dynamodb, threaded=True)


if __name__ == "__main__":
    main()
