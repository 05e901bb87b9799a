"""Live sync with a Label Studio instance: pull exports, receive webhooks, write task scores back.

Modules:
- `client`: the HTTP client of the Label Studio REST API (`Authorization: Token`).
- `store`: the connection of a metric project to a Label Studio project, kept in the state directory.
- `aws_store`: the same connections kept in S3 and SSM Parameter Store, for the stack on AWS.
- `stores`: selection of one of the two from the environment.
- `events`: the rescoring and deletions that a webhook payload calls for.
- `writeback`: read-modify-write of a task's `data` and `meta` with a conflict check.
- `sync`: rescoring tasks, handling deletions, and reconciling a whole project.
- `dispatch`: where webhook work runs after the response (a background thread, or inline).
"""
