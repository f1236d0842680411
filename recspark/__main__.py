from recspark.cli import main

raise SystemExit(main())
