"""``python -m getiaction_export.deploy_check DIR``: the command's stable name; the check lives in
:mod:`getiaction_export.physicalai.deploy_check` with the rest of what the deploy runtime dictates."""

from getiaction_export.physicalai.deploy_check import main

if __name__ == "__main__":
    main()
