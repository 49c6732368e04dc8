"""Corpus preparation: mouth crops, audio, manifests, skip reports, previews."""
