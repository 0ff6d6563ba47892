from photod.cli import main

raise SystemExit(main())
