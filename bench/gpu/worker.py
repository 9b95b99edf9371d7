"""A long-lived engine process for bench/gpu/bench.py: the engine's architecture without Node.

It imports ``arc_ttft.entry`` (the module the TypeScript bridge drives) and serves ``dispatch`` calls over pipes,
one per line: the driver writes ``METHOD<TAB>PAYLOAD_JSON`` to stdin and reads the JSON envelope back from stdout.
Like the real bridge, the payload crosses a process boundary as JSON text and the model stays loaded between calls.
Anything the libraries print goes to stderr, so stdout carries envelopes only.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))


def main() -> None:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # stray prints must not corrupt the envelope stream
    from arc_ttft.entry import dispatch

    out.write('{"ok": true, "result": {"ready": true}}\n')
    out.flush()
    for line in sys.stdin:
        method, _, payload = line.rstrip("\n").partition("\t")
        out.write(dispatch(method, payload) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
