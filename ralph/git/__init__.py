"""Everything ralph does with git and GitHub: the checkout a run works in and its branch
(`repo`), the run's workspace and one commit per iteration (`workspace`, `commits`), pushing
the run branch (`push`), the GitHub REST client (`api`) and the run's pull request (`pr`).

Every git command goes through `ralph.gitrun`, which runs git on a repository the agent has
written without running the agent's code.
"""
