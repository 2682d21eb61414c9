"""Everything ralph does with git and GitHub: pushing the run branch (`push`), the GitHub REST
client (`api`) and the run's pull request (`pr`).

Every git command goes through `ralph.gitrun`, which runs git on a repository the agent has
written without running the agent's code.
"""
