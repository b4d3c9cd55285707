"""Child process for arena probing:
`python -m tflite_export._micro_probe MODEL [DECOMPRESSION_BYTES]`.

Reads arena sizes from stdin, one per line, and answers "ok" or "fail" after
allocating and invoking the model at that size. The TFLite-Micro Python
interpreter can crash the process when it is created again after a failed
allocation, so probing runs here, never in the user's process."""

import sys


def main(path: str, decompression: int = 0) -> None:
    from tflite_export.micro_run import probe_inputs, quiet_native_output, run_micro
    from tflite_export.model import TFLiteModel

    tfl = TFLiteModel.load(path)
    inputs = probe_inputs(tfl)
    out = sys.stdout
    for line in sys.stdin:
        try:
            with quiet_native_output():
                run_micro(tfl, inputs, int(line), decompression)
            answer = "ok"
        except RuntimeError:
            answer = "fail"
        out.write(answer + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
