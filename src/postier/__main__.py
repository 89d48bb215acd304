from postier.cli.main import main

raise SystemExit(main())
