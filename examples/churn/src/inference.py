"""Inference job of the churn example (the full pipeline arrives with the example-model work item)."""

import sys


def main(argv: list[str]) -> int:
    print("inference called with", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
