"""What the session workflow and its activities agree on: each activity's input and result.

Light modules (pydantic and Keel's own models only), so workflow code imports
no vendor SDK, no store and no network client when it imports a contract.
The activity names are in `keel.names`.
"""
