"""zcopy send/recv: files and trees between machines; sendfile on the sender, splice on the receiver."""
