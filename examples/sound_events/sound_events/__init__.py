"""An example user package for scopeml: a network and a data source of its own."""
