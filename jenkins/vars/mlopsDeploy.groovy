// mlopsDeploy(repository: 'https://git.example.com/models/%s.git'): the job a promotion calls to
// deploy a model to the next stand (the stands file's deploy.url points at its buildWithParameters).
// The promoter has already copied the environment archive and code package to that stand's
// storage; this job renders the model's DAGs for the stand and publishes them. `mlops deploy`
// refuses when the stand's storage lacks the artifacts the rendered DAGs name (say the model
// repository moved on since the promoted version was packaged): rebuild from the promoted commit.
// A promotion sends CODE_PACKAGE: the job renders from that package (config, requirements and scripts,
// copied to the stand by the push), exactly what was promoted, with no access to the repository.
// Without one (a manual run), it checks out GIT_SHA (the commit the package recorded), else the branch
// GIT_REF, and validates, renders and deploys from there.
// With VERSION (a promotion's push), the deploy then starts the stand's acceptance run for that version
// through the stand's Airflow REST API (airflow.api_url in the stands file): its checks, gate and promotion
// decide whether the version takes this stand's alias. The Airflow user comes from the airflowCredentials
// username/password credential (bound as MLOPS_AIRFLOW_USR / MLOPS_AIRFLOW_PSW).
// Options: repository (String.format pattern, %s = MODEL), branch (default main), gitCredentials
// (credential id for the model repositories), awsCredentials, airflowCredentials.
def call(Map config = [:]) {
    String repository = config.get('repository', 'https://git.example.com/models/%s.git')
    String defaultBranch = config.get('branch', 'main')
    String gitCredentials = config.get('gitCredentials', '')
    List<String> aws = config.get('awsCredentials', ['mlops-aws-access-key-id', 'mlops-aws-secret-access-key'])
    String airflowCredentials = config.get('airflowCredentials', 'mlops-airflow')
    pipeline {
        agent any
        options {
            timeout(time: 30, unit: 'MINUTES')
        }
        parameters {
            string(name: 'MODEL', description: 'Registered model name (model.name)')
            string(name: 'STAND', description: 'The stand to deploy to')
            string(name: 'VERSION', defaultValue: '', description: 'Model version on that stand')
            string(name: 'SOURCE_STAND', defaultValue: '', description: 'The stand it was promoted from')
            string(name: 'SOURCE_VERSION', defaultValue: '', description: 'Its version there')
            string(name: 'ENV_ARCHIVE', defaultValue: '', description: 'Environment archive key (copied already)')
            string(name: 'CODE_PACKAGE', defaultValue: '', description: 'Code package prefix (copied already)')
            string(name: 'CONFIG_HASH', defaultValue: '', description: 'Config hash on the source stand')
            string(name: 'GIT_SHA', defaultValue: '', description: 'Commit to deploy (the promoted version\'s)')
            string(name: 'GIT_REF', defaultValue: defaultBranch, description: 'Branch, when no GIT_SHA is given')
        }
        environment {
            AWS_ACCESS_KEY_ID = credentials("${aws[0]}")
            AWS_SECRET_ACCESS_KEY = credentials("${aws[1]}")
            MLOPS_AIRFLOW = credentials("${airflowCredentials}")
            MLOPS_ACTOR = "jenkins:${env.JOB_NAME}#${env.BUILD_NUMBER}"
            MODEL_DIR = 'model'
            BUNDLE_DIR = 'build/bundle'
        }
        stages {
            stage('Deploy the promoted package') {
                when { expression { params.CODE_PACKAGE } }
                steps {
                    // one command, as tests/test_jenkins.py runs it: publish, then start the acceptance run
                    // groovylint-disable-next-line LineLength
                    mlops 'deploy --package "$CODE_PACKAGE" --stand "$STAND" --version "$VERSION" --source-stand "$SOURCE_STAND" --source-version "$SOURCE_VERSION"'
                }
            }
            stage('Checkout') {
                when { expression { !params.CODE_PACKAGE } }
                steps {
                    dir(env.MODEL_DIR) {
                        checkout(scmGit(branches: [[name: params.GIT_SHA ?: "*/${params.GIT_REF}"]],
                                        userRemoteConfigs: [[url: String.format(repository, params.MODEL),
                                                             credentialsId: gitCredentials]]))
                    }
                }
            }
            stage('Validate') {
                when { expression { !params.CODE_PACKAGE } }
                steps {
                    mlops 'validate "$MODEL_DIR/model.yaml" --stand "$STAND"'
                }
            }
            stage('Render') {
                when { expression { !params.CODE_PACKAGE } }
                steps {
                    mlops 'render "$MODEL_DIR/model.yaml" --stand "$STAND" --out "$BUNDLE_DIR"'
                }
            }
            stage('Deploy') {
                when { expression { !params.CODE_PACKAGE } }
                steps {
                    mlops 'deploy "$MODEL_DIR/model.yaml" --stand "$STAND" --bundle "$BUNDLE_DIR"'
                }
            }
        }
    }
}
