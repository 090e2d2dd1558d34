"""What a change does to the store: the pure decisions of the sync protocol (fieldsync/2: camelCase on the wire)."""
