from apex_worker.cli import main

raise SystemExit(main())
