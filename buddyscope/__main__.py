from buddyscope.cli import main

raise SystemExit(main())
