"""``python -m synthetic_hospital {plan,send,write}``."""

from synthetic_hospital.cli import main

raise SystemExit(main())
