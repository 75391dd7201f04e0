# Windows clients.
outpost:
  # Where apps, releases and pinned Pythons live. Keep it short: the deepest extracted file of
  # an app must stay under 260 characters.
  root: 'C:\outpost'

  # Official embeddable Python packages, one folder per version, from the artifact store.
  pythons:
    '3.11.9':
      source: salt://artifacts/python/python-3.11.9-embed-amd64.zip
      source_hash: sha256=<64 hex digits>

  # The WinSW service wrapper, pinned and hash-checked.
  winsw:
    source: salt://artifacts/winsw/WinSW-x64-2.12.0.exe
    source_hash: sha256=<64 hex digits>
