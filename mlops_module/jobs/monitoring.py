"""The built-in monitoring job, run when ``monitoring.script`` is not set.

Not implemented in this version of mlops (the monitoring work item builds the Spark drift job):
it says so and measures nothing; the DAG's decision task then skips, so no retraining follows.
"""

import sys

if __name__ == "__main__":
    print("mlops built-in monitoring job: not implemented in this version; no drift was measured",
          file=sys.stderr)
    sys.exit(0)
