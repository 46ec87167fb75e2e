"""The records stage (notebook 03): the record format, writer, reader, the authors'
legacy schema, the tf.data pipeline, images from the command line."""
