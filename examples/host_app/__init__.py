"""An example host application (an ERP-like app with its own users and records) mounting Hexie."""
