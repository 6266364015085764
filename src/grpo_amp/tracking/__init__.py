"""MLflow tracking (``mlflow_store``): the store, experiments and runs the stages log to.
"""
