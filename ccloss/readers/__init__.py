"""How each dataset's files are read into uint8 tensors (``ccloss.data.load_tensors`` calls these)."""
