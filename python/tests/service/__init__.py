"""The service end-to-end tests: a package, so that their service fixture (package scope)
stops when the last of them has run, before later directories want port 5000."""
