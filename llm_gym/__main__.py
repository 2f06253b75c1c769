from llm_gym.cli import main

raise SystemExit(main())
