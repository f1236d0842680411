"""Training: Petastorm-fed Horovod ranks, MLflow tracking and registry."""
