"""The example application beside the example formations, which list `myapp.tools`."""
