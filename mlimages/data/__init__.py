"""The dictionary and hierarchy, label lists (`labels`), the generated miniature, subsets
and notebook 01's exploration."""
