"""The download stage (notebook 02): fetching, ImageNet extraction, validation, the
manifest, shards across machines."""
