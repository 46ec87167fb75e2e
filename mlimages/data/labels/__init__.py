"""Label lists: the CSR label table, the reader and its fast paths, the integrity check."""
