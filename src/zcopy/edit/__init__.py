"""zcopy.edit: find/replace in files of any size through mmap, in place or by an atomic rewrite."""
