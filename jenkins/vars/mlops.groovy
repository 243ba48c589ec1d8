// mlops 'validate model.yaml --stand mdp': one mlops command, labelled in the build log.
// The command is $MLOPS when the job sets it (a path on the agent), else `mlops` on the PATH.
// A failing command fails the stage with mlops's own message (exit 1: invalid input, 2: usage).
def call(String arguments) {
    sh(label: "mlops ${arguments}", script: "\"\${MLOPS:-mlops}\" ${arguments}")
}
