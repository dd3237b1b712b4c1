from perfstudy.cli import main

raise SystemExit(main())
