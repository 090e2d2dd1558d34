"""File formats for analysts: cleaned CSV zip, XLSX and GeoJSON, streamed (pure)."""
