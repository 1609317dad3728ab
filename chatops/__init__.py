"""chatops-deploy: deploy from chat."""
