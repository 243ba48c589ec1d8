// mlopsPipeline(): the whole pipeline of a model repository in one step, the same stages and
// commands as the toolkit's top-level Jenkinsfile (tests/test_jenkins.py checks they agree).
// A model repository's Jenkinsfile:   @Library('mlops') _
//                                     mlopsPipeline(stand: 'mdp')
// Options: stand (default mdp), modelDir (default '.'), deployBranch (default main: only it packages
// and deploys; pull requests and other branches stop after the tests), awsCredentials (a pair of
// Secret text credential ids, default mlops-aws-access-key-id / mlops-aws-secret-access-key).
def call(Map config = [:]) {
    String firstStand = config.get('stand', 'mdp')
    String directory = config.get('modelDir', '.')
    String deployBranch = config.get('deployBranch', 'main')
    List<String> aws = config.get('awsCredentials', ['mlops-aws-access-key-id', 'mlops-aws-secret-access-key'])
    pipeline {
        agent any
        options {
            disableConcurrentBuilds()
            timeout(time: 90, unit: 'MINUTES')
        }
        environment {
            STAND = "${firstStand}"
            MODEL_DIR = "${directory}"
            AWS_ACCESS_KEY_ID = credentials("${aws[0]}")
            AWS_SECRET_ACCESS_KEY = credentials("${aws[1]}")
            MLOPS_ACTOR = "jenkins:${env.JOB_NAME}#${env.BUILD_NUMBER}"
            BUNDLE_DIR = 'build/bundle'
        }
        stages {
            stage('Checkout') {
                steps {
                    checkout scm
                }
            }
            stage('Validate') {
                steps {
                    mlops 'validate "$MODEL_DIR/model.yaml" --stand "$STAND"'
                }
            }
            stage('Model tests') {
                steps {
                    sh 'cd "$MODEL_DIR" && python -m pytest -q tests'
                }
            }
            stage('Package') {
                when { expression { env.CHANGE_ID == null && (env.BRANCH_NAME ?: deployBranch) == deployBranch } }
                steps {
                    mlops 'package "$MODEL_DIR/model.yaml" --stand "$STAND"'
                }
            }
            stage('Render') {
                when { expression { env.CHANGE_ID == null && (env.BRANCH_NAME ?: deployBranch) == deployBranch } }
                steps {
                    mlops 'render "$MODEL_DIR/model.yaml" --stand "$STAND" --out "$BUNDLE_DIR"'
                }
            }
            stage('Deploy') {
                when { expression { env.CHANGE_ID == null && (env.BRANCH_NAME ?: deployBranch) == deployBranch } }
                steps {
                    mlops 'deploy "$MODEL_DIR/model.yaml" --stand "$STAND" --bundle "$BUNDLE_DIR"'
                }
            }
        }
        post {
            success {
                archiveArtifacts artifacts: 'build/bundle/**', fingerprint: true
            }
        }
    }
}
