"""OpenRosa for ODK Collect and Enketo: formList, form download, manifest, media and submission."""
