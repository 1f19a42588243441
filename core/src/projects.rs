//! Storage and rules for projects, memberships and join requests. Every SQL statement about them is here,
//! and every read goes through [`visible`], which scopes it to the caller.

use crate::audit;
use crate::auth::Caller;
use crate::clock::Clock;
use crate::db::entity::{JoinStatus, MemberRole, join_request, membership, project, user};
use crate::db::unique_as;
use crate::error::{AppError, AppResult};
use model::projects::{JoinRequestView, MemberView, ProjectDetail, ProjectView, Role, validate_name};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationDef, Set, TransactionSession, TransactionTrait,
};
use serde_json::json;
use std::collections::HashMap;

fn view(p: project::Model, my_role: Option<Role>) -> ProjectView {
    ProjectView { id: p.id, name: p.name, description: p.description, created_at: p.created_at, my_role }
}

async fn role_of(db: &impl ConnectionTrait, project_id: i32, user_id: i32) -> AppResult<Option<Role>> {
    Ok(membership::Entity::find_by_id((project_id, user_id)).one(db).await?.map(|m| m.role.into()))
}

/// The project called `name` if the caller may see it (member or operator), with the caller's role.
/// Anything else is `not_found`, so that names of other projects do not leak through this path. A name no
/// project can have ([`validate_name`]) is not looked up (PostgreSQL refuses a NUL in a query) nor echoed.
pub async fn visible(
    db: &impl ConnectionTrait,
    caller: &Caller,
    name: &str,
) -> AppResult<(project::Model, Option<Role>)> {
    if validate_name(name).is_err() {
        return Err(AppError::not_found("project"));
    }
    let not_found = || AppError::not_found(format!("project {name}"));
    let project = project::Entity::find()
        .filter(project::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(not_found)?;
    let role = role_of(db, project.id, caller.user_id).await?;
    if role.is_none() && !caller.operator {
        return Err(not_found());
    }
    Ok((project, role))
}

/// The caller's projects; operators get every project.
pub async fn list(db: &impl ConnectionTrait, caller: &Caller) -> AppResult<Vec<ProjectView>> {
    if !caller.operator {
        // One query: the caller's memberships joined to their projects (every dashboard view asks). The
        // membership is the row read for sure, so an unknown stored role fails the read instead of being
        // taken for "no role".
        let project_of: RelationDef = membership::Entity::belongs_to(project::Entity)
            .from(membership::Column::ProjectId)
            .to(project::Column::Id)
            .into();
        return Ok(membership::Entity::find()
            .join(JoinType::InnerJoin, project_of)
            .filter(membership::Column::UserId.eq(caller.user_id))
            .select_also(project::Entity)
            .order_by_asc(project::Column::Name)
            .all(db)
            .await?
            .into_iter()
            .filter_map(|(m, p)| Some(view(p?, Some(m.role.into()))))
            .collect());
    }
    let roles: HashMap<i32, Role> = membership::Entity::find()
        .filter(membership::Column::UserId.eq(caller.user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.project_id, m.role.into()))
        .collect();
    Ok(project::Entity::find()
        .order_by_asc(project::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|p| {
            let r = roles.get(&p.id).copied();
            view(p, r)
        })
        .collect())
}

pub async fn create<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    name: &str,
    description: &str,
) -> AppResult<ProjectView> {
    caller.require_write()?;
    let name = name.trim();
    validate_name(name)?;
    let description = description.trim();
    model::limits::multiline("description", "description", description, model::limits::PROJECT_DESCRIPTION)?;
    let now = clock.now();
    let txn = db.begin().await?;
    let project = project::ActiveModel {
        name: Set(name.to_owned()),
        description: Set(description.to_owned()),
        created_by: Set(caller.user_id),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        unique_as(e, || AppError::invalid("name", format!("a project called {name} exists already")))
    })?;
    membership::ActiveModel {
        project_id: Set(project.id),
        user_id: Set(caller.user_id),
        role: Set(MemberRole::Leader),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(&txn, now, Some(caller.user_id), "project.create", name, json!({})).await?;
    txn.commit().await?;
    Ok(view(project, Some(Role::Leader)))
}

pub async fn detail(db: &impl ConnectionTrait, caller: &Caller, name: &str) -> AppResult<ProjectDetail> {
    let (project, role) = visible(db, caller, name).await?;
    let members = members_of(db, project.id).await?;
    let requests = if role == Some(Role::Leader) || caller.operator {
        requests_of(db, Some(project.id), None, true).await?
    } else {
        Vec::new()
    };
    Ok(ProjectDetail { project: view(project, role), members, requests })
}

/// Members of the project called `name`, for those who may see it ([`visible`]: its members and operators;
/// anyone else gets `not_found`).
pub async fn members(db: &impl ConnectionTrait, caller: &Caller, name: &str) -> AppResult<Vec<MemberView>> {
    let (project, _) = visible(db, caller, name).await?;
    members_of(db, project.id).await
}

/// Members of a project with their names and emails (two indexed queries). Unscoped: callers check
/// visibility first.
async fn members_of(db: &impl ConnectionTrait, project_id: i32) -> AppResult<Vec<MemberView>> {
    let memberships = membership::Entity::find()
        .filter(membership::Column::ProjectId.eq(project_id))
        .order_by_asc(membership::Column::CreatedAt)
        .all(db)
        .await?;
    let users = users_by_id(db, memberships.iter().map(|m| m.user_id)).await?;
    Ok(memberships
        .into_iter()
        .filter_map(|m| {
            let u = users.get(&m.user_id)?;
            Some(MemberView {
                user_id: u.id,
                name: u.name.clone(),
                email: u.email.clone(),
                role: m.role.into(),
                joined_at: m.created_at,
            })
        })
        .collect())
}

async fn users_by_id(
    db: &impl ConnectionTrait,
    ids: impl Iterator<Item = i32>,
) -> AppResult<HashMap<i32, user::Model>> {
    let ids: Vec<i32> = ids.collect();
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect())
}

/// Join requests filtered by project and/or requesting user.
async fn requests_of(
    db: &impl ConnectionTrait,
    project_id: Option<i32>,
    user_id: Option<i32>,
    pending_only: bool,
) -> AppResult<Vec<JoinRequestView>> {
    let mut query = join_request::Entity::find().order_by_asc(join_request::Column::Id);
    if let Some(p) = project_id {
        query = query.filter(join_request::Column::ProjectId.eq(p));
    }
    if let Some(u) = user_id {
        query = query.filter(join_request::Column::UserId.eq(u));
    }
    if pending_only {
        query = query.filter(join_request::Column::Status.eq(JoinStatus::Pending));
    }
    let rows = query.all(db).await?;
    if rows.is_empty() {
        return Ok(Vec::new()); // the usual case on a dashboard: spare the two lookups
    }
    let users = users_by_id(db, rows.iter().map(|r| r.user_id)).await?;
    let projects: HashMap<i32, String> = project::Entity::find()
        .filter(project::Column::Id.is_in(rows.iter().map(|r| r.project_id).collect::<Vec<_>>()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let u = users.get(&r.user_id)?;
            Some(JoinRequestView {
                id: r.id,
                project: projects.get(&r.project_id)?.clone(),
                user_id: u.id,
                user_name: u.name.clone(),
                user_email: u.email.clone(),
                message: r.message,
                status: r.status.into(),
                created_at: r.created_at,
            })
        })
        .collect())
}

pub async fn my_requests(db: &impl ConnectionTrait, caller: &Caller) -> AppResult<Vec<JoinRequestView>> {
    requests_of(db, None, Some(caller.user_id), false).await
}

/// Pending requests of a project, for its leaders and operators.
pub async fn pending_requests(
    db: &impl ConnectionTrait,
    caller: &Caller,
    name: &str,
) -> AppResult<Vec<JoinRequestView>> {
    let (project, role) = visible(db, caller, name).await?;
    if role != Some(Role::Leader) && !caller.operator {
        return Err(AppError::forbidden("only the project's leaders see its join requests"));
    }
    requests_of(db, Some(project.id), None, true).await
}

/// Asks to join the project called `name`. Knowing a project's name is what lets one ask.
///
/// At most one pending request per user and project: the partial unique index `join_requests_one_pending`
/// decides, so two concurrent asks store one row and the other hears `conflict`.
pub async fn request_join<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    name: &str,
    message: &str,
) -> AppResult<JoinRequestView> {
    caller.require_write()?;
    let name = name.trim();
    let message = message.trim();
    model::limits::line("project", "project name", name, model::limits::PROJECT_NAME)?;
    model::limits::multiline("message", "message", message, model::limits::JOIN_MESSAGE)?;
    let project = project::Entity::find()
        .filter(project::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| AppError::invalid("project", format!("no project is called {name}")))?;
    if role_of(db, project.id, caller.user_id).await?.is_some() {
        return Err(AppError::conflict(format!("you are a member of {name} already")));
    }
    let now = clock.now();
    let txn = db.begin().await?;
    let row = join_request::ActiveModel {
        project_id: Set(project.id),
        user_id: Set(caller.user_id),
        message: Set(message.to_owned()),
        status: Set(JoinStatus::Pending),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| unique_as(e, || AppError::conflict(format!("you have asked to join {name} already"))))?;
    audit::record(
        &txn,
        now,
        Some(caller.user_id),
        "project.join_request",
        name,
        json!({ "request": row.id }),
    )
    .await?;
    txn.commit().await?;
    let mut views = requests_of(db, Some(project.id), Some(caller.user_id), true).await?;
    views.pop().ok_or_else(|| AppError::internal("join request vanished after insert"))
}

/// A leader (or operator) approves or rejects a pending request; approval makes the user a member.
///
/// The decision is one conditional update (`… WHERE id = ? AND status = 'pending'`): of concurrent
/// decisions on one request exactly one changes it, the others change nothing and hear `conflict`.
pub async fn decide<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    clock: &Clock,
    caller: &Caller,
    id: i32,
    approve: bool,
) -> AppResult<JoinRequestView> {
    caller.require_write()?;
    let not_found = || AppError::not_found(format!("join request {id}"));
    let request = join_request::Entity::find_by_id(id).one(db).await?.ok_or_else(not_found)?;
    let role = role_of(db, request.project_id, caller.user_id).await?;
    if role != Some(Role::Leader) && !caller.operator {
        // Members and outsiders alike: do not confirm that the request exists.
        return Err(if role.is_some() {
            AppError::forbidden("only the project's leaders decide join requests")
        } else {
            not_found()
        });
    }
    let decided_already =
        || AppError::conflict(format!("join request {id} was decided already (approved or rejected)"));
    if request.status != JoinStatus::Pending {
        return Err(decided_already());
    }
    let now = clock.now();
    let (project_id, user_id) = (request.project_id, request.user_id);
    let status = if approve { JoinStatus::Approved } else { JoinStatus::Rejected };
    let txn = db.begin().await?;
    let changed = join_request::Entity::update_many()
        .col_expr(join_request::Column::Status, Expr::value(status))
        .col_expr(join_request::Column::DecidedBy, Expr::value(Some(caller.user_id)))
        .col_expr(join_request::Column::DecidedAt, Expr::value(Some(now)))
        .filter(join_request::Column::Id.eq(id))
        .filter(join_request::Column::Status.eq(JoinStatus::Pending))
        .exec(&txn)
        .await?
        .rows_affected;
    if changed != 1 {
        return Err(decided_already());
    }
    if approve {
        // A member already (an operator added them, say): the membership stays as it is.
        membership::Entity::insert(membership::ActiveModel {
            project_id: Set(project_id),
            user_id: Set(user_id),
            role: Set(MemberRole::Member),
            created_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
    }
    audit::record(
        &txn,
        now,
        Some(caller.user_id),
        "project.join_decision",
        &id.to_string(),
        json!({ "approve": approve }),
    )
    .await?;
    txn.commit().await?;
    let mut views = requests_of(db, Some(project_id), Some(user_id), false).await?;
    views.retain(|v| v.id == id);
    views.pop().ok_or_else(not_found)
}
