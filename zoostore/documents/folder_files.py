"""The names of the documents a model folder may hold, apart from their parsers: code that only
looks for them (publish, for every file it publishes) then imports no parser.

    model.toml          zoostore's descriptor (zoostore.documents.descriptor)
    definition.yaml     Autoware ModelZoo's descriptor (zoostore.documents.definition_yaml)
    build.toml          how `zoostore build` made one architecture (zoostore.documents.build_record)
"""

from __future__ import annotations

MODEL_TOML = "model.toml"
DEFINITION_YAML = "definition.yaml"
BUILD_TOML = "build.toml"
