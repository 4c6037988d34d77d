"""``python -m imapd`` runs the same CLI as the ``imapd`` console script."""

from imapd.cli import main

raise SystemExit(main())
