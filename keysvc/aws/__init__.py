"""The AWS adapter: EC2 termination events (EventBridge and Auto Scaling) arriving through SQS."""

__all__: list[str] = []
