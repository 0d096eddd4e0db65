"""The project's own namespace: what the pretraining and detection stages share or build on."""
