"""Where messages come from: IMAP mailboxes, Maildirs, mbox files, directories of .eml files."""
